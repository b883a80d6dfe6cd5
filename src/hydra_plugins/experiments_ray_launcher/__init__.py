"""``hydra/launcher=ray`` is the project's ``conf/hydra/launcher/ray.yaml`` alone, not that file merged into the Ray
plugin's schema of the same name.

hydra-ray-launcher registers its config as ``hydra/launcher/ray`` in Hydra's ConfigStore. The project's YAML takes
that option's place (the conf folder comes first on the search path), and Hydra 1.3 then "validates" a file against
a stored config of the same name and warns at every composition that this is deprecated (automatic schema matching,
https://hydra.cc/docs/1.2/upgrades/1.0_to_1.1/automatic_schema_matching). The stored node adds nothing the YAML
lacks (its ``init`` and ``remote`` are free-form dicts), so it is dropped here; ``hydra/launcher=ray_aws`` stays.

Hydra imports every module under ``hydra_plugins`` before it composes a config. The plugin's ``_config`` module is
imported first, so that it is cached and never stores the node again, whichever plugin Hydra scans first.
"""

from hydra.core.config_store import ConfigStore

try:
    import hydra_plugins.hydra_ray_launcher._config  # noqa: F401  # stores the plugin's nodes, once
except ImportError:  # no 'cluster' extra: nothing to drop (experiments.extras names the extra)
    pass
else:
    ConfigStore.instance().repo.get("hydra", {}).get("launcher", {}).pop("ray.yaml", None)
