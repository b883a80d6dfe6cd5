"""The miner contract, checked for every ``conf/miner`` option, and each strategy's own behaviour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.errors import ConfigError
from experiments.miners.adversarial import AdversarialMiner
from experiments.miners.base import Miner, MiningContext
from experiments.miners.cosine import CosineMiner
from experiments.miners.kmeans import KMeansMiner
from experiments.miners.mixed import MixedMiner
from experiments.miners.positive_aware import PositiveAwareMiner
from experiments.miners.random_negatives import RandomMiner
from experiments.records import Example

MINER_CONF = Path(__file__).resolve().parents[1] / "conf" / "miner"
MINER_NAMES = sorted(path.stem for path in MINER_CONF.glob("*.yaml"))
#: Options whose draws depend on the seed even when their pool is large enough.
SEEDED = {"random", "kmeans", "mixed"}
#: Options that fine-tune a model under the seed before drawing.
TRAINED_TEACHER = {"second_round"}
CLUSTERS = {"a": [0, 1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]}


def load_miner(name: str, **overrides: object) -> Miner:
    """Build a miner from its real YAML, so a broken config fails a test (``second_round``: see ``load``)."""
    config = OmegaConf.load(MINER_CONF / f"{name}.yaml")
    if "cache_dir" in config:  # ${paths.cache_dir}/... outside a run's config: no disk cache here
        config.cache_dir = None
    miner = instantiate(config, **overrides)
    assert isinstance(miner, Miner)
    return miner


@pytest.fixture
def load(tiny_model_dir: Path, tmp_path: Path) -> Callable[..., Miner]:
    """``load(name, **overrides)``: ``load_miner``, and ``second_round`` composed by Hydra (its defaults list nests
    two miners and a teacher), the teacher a tiny model trained for one epoch into ``tmp_path``."""

    def build(name: str, **overrides: object) -> Miner:
        if name != "second_round":
            return load_miner(name, **overrides)
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(MINER_CONF.parent), version_base="1.3"):
            config = compose(
                "config",
                overrides=[
                    "miner=second_round",
                    f"embedder.model={tiny_model_dir}",
                    "miner.teacher.epochs=1",
                    "miner.teacher.batch_size=4",
                    "progress=false",
                    f"paths.outputs_dir={tmp_path}",
                ],
            )
        miner = instantiate(config.miner, **overrides)
        assert isinstance(miner, Miner)
        return miner

    return build


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module")
def context() -> MiningContext:
    """10 categories in three orthogonal clusters; within a cluster, member j drifts from the first by 0.1*j.

    Examples 0-9 each ask for category i; example 10 asks for category 0 but its query looks like cluster b
    (the retriever ranks 5, 4, 6 above the positive); example 11 is multi-label (categories 2 and 8).
    """
    dim = 8
    vectors = []
    for axis, members in enumerate(CLUSTERS.values()):
        for j, _ in enumerate(members):
            vector = np.zeros(dim)
            vector[axis] = 1.0
            vector[3 + axis] = 0.1 * j
            vectors.append(unit(vector))
    categories = np.stack(vectors)
    noise = np.eye(dim)[7]
    queries = [unit(categories[i] + 0.2 * noise) for i in range(10)]
    queries.append(unit(categories[5] + 0.5 * categories[0]))
    queries.append(unit(categories[2] + categories[8]))
    labels = [f"cat{i}" for i in range(10)]
    expected = [[f"cat{i}"] for i in range(10)] + [["cat0"], ["cat2", "cat8"]]
    examples = [Example(input=f"query {i}", expected=labels_) for i, labels_ in enumerate(expected)]
    return MiningContext(
        examples=examples,
        labels=labels,
        documents=[f"doc {label}" for label in labels],
        category_vectors=categories,
        query_vectors=np.stack(queries),
    )


def negative_indices(context: MiningContext, item_negatives: list[str]) -> list[int]:
    return [context.documents.index(document) for document in item_negatives]


# --- the contract, for every option of the miner group -------------------------------------------------


def test_every_strategy_has_a_config() -> None:
    assert MINER_NAMES == ["adversarial", "cosine", "kmeans", "mixed", "positive_aware", "random", "second_round"]


@pytest.mark.parametrize("name", MINER_NAMES)
def test_items_honour_the_contract(name: str, load: Callable[..., Miner], context: MiningContext) -> None:
    miner = load(name)
    k, duplication = 3, 2
    mined = miner.mine(context, k=k, duplication=duplication, seed=0)
    assert len(mined) == len(context.examples) * duplication
    for position, item in enumerate(mined.items):
        example_index = position // duplication
        assert item.query == context.examples[example_index].input
        positives = set(context.positives(example_index))
        negatives = negative_indices(context, item.hard_negatives)
        assert len(negatives) == k
        assert not positives & set(negatives)
        assert len(set(negatives)) == k or miner.allows_repeats
    assert all(isinstance(count, int) for count in mined.fill_notes.values())


@pytest.mark.parametrize("name", MINER_NAMES)
def test_same_seed_same_set_and_seeded_strategies_follow_the_seed(
    name: str, load: Callable[..., Miner], context: MiningContext
) -> None:
    digests = [load(name).mine(context, k=2, duplication=2, seed=seed).digest() for seed in (1, 1, 2)]
    assert digests[0] == digests[1]
    if name in SEEDED:
        assert digests[0] != digests[2]
    elif name not in TRAINED_TEACHER:  # a teacher trained under another seed may or may not confuse alike
        assert digests[0] == digests[2]  # deterministic pools fill k=2 without random top-up


@pytest.mark.parametrize("name", MINER_NAMES)
@pytest.mark.parametrize(("k", "duplication"), [(-1, 1), (10, 1), (3, 0)])
def test_impossible_knobs_fail(
    name: str, load: Callable[..., Miner], k: int, duplication: int, context: MiningContext
) -> None:
    with pytest.raises(ConfigError):
        load(name).mine(context, k=k, duplication=duplication, seed=0)


@pytest.mark.parametrize("name", MINER_NAMES)
def test_k_zero_mines_no_negatives_and_is_the_same_set_for_every_miner(
    name: str, load: Callable[..., Miner], context: MiningContext
) -> None:
    mined = load(name, strict=True).mine(context, k=0, duplication=2, seed=0)
    assert len(mined) == 2 * len(context.examples)
    assert all(not item.hard_negatives and item.relevant_passages for item in mined.items)
    assert mined.digest() == load_miner("random").mine(context, k=0, duplication=2, seed=5).digest()


@pytest.mark.parametrize("name", MINER_NAMES)
def test_multi_label_example_limits_k(name: str, load: Callable[..., Miner], context: MiningContext) -> None:
    with pytest.raises(ConfigError, match="expected labels"):
        load(name).mine(context, k=9, duplication=1, seed=0)


def test_strict_fails_and_lenient_tops_up_a_short_pool(context: MiningContext) -> None:
    with pytest.raises(ConfigError, match="CosineMiner found only 2 of k=3"):
        load_miner("cosine", rank_max=2, strict=True).mine(context, k=3, duplication=2, seed=0)
    mined = load_miner("cosine", rank_max=2).mine(context, k=3, duplication=2, seed=0)
    assert mined.fill_notes == {"CosineMiner.topped_up_negatives": len(context.examples) * 2}
    assert all(len(item.hard_negatives) == 3 for item in mined.items)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RandomMiner(replace="yes"), "RandomMiner: replace='yes'"),  # type: ignore[arg-type]
        (lambda: CosineMiner(rank_min=5, rank_max=3), "CosineMiner: rank_min=5 > rank_max=3"),
        (lambda: CosineMiner(rank_min=0), "CosineMiner: rank_min=0"),
        (lambda: KMeansMiner(n_clusters=0), "KMeansMiner: n_clusters=0"),
        (lambda: PositiveAwareMiner(pct=0), "PositiveAwareMiner: pct=0"),
        (lambda: PositiveAwareMiner(pct=1.5), "PositiveAwareMiner: pct=1.5"),
        (lambda: AdversarialMiner(margin=-1), "AdversarialMiner: margin=-1"),
        (lambda: MixedMiner(hard=CosineMiner(), hard_share=1.5), "MixedMiner: hard_share=1.5"),
        (lambda: MixedMiner(hard="cosine"), "MixedMiner: hard='cosine'"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters_name_the_class_and_value(build: Callable[[], Miner], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build()
    assert str(raised.value).startswith(message)


# --- each strategy's behaviour ---------------------------------------------------------------------------


def test_random_without_replacement_gives_distinct_negatives(context: MiningContext) -> None:
    mined = RandomMiner().mine(context, k=8, duplication=3, seed=0)
    assert all(len(set(item.hard_negatives)) == 8 for item in mined.items)


def test_random_with_replacement_may_repeat_like_the_seed(context: MiningContext) -> None:
    miner = RandomMiner(replace=True)
    assert miner.allows_repeats
    mined = miner.mine(context, k=8, duplication=3, seed=0)
    assert any(len(set(item.hard_negatives)) < 8 for item in mined.items)


def test_cosine_picks_the_nearest_categories_first(context: MiningContext) -> None:
    mined = CosineMiner().mine(context, k=3, duplication=1, seed=0)
    assert negative_indices(context, mined.items[0].hard_negatives) == [1, 2, 3]
    assert negative_indices(context, mined.items[4].hard_negatives) == [5, 6, 0]  # ties after b: lowest index
    multi = set(negative_indices(context, mined.items[11].hard_negatives))
    assert multi <= {0, 1, 3, 7, 9}  # neighbours of either positive


def test_cosine_honours_the_rank_window_and_walks_it(context: MiningContext) -> None:
    mined = CosineMiner(rank_min=2, rank_max=5).mine(context, k=2, duplication=3, seed=0)
    draws = [negative_indices(context, item.hard_negatives) for item in mined.items[:3]]
    assert draws == [[2, 3], [4, 5], [2, 3]]  # ranks 2-5 of cat0's neighbours: 2, 3, 4, 5
    assert mined.fill_notes == {"CosineMiner.topped_up_negatives": 0}


def test_cosine_window_beyond_the_categories_fails(context: MiningContext) -> None:
    with pytest.raises(ConfigError, match="rank_min=10"):
        CosineMiner(rank_min=10).mine(context, k=2, duplication=1, seed=0)


def test_kmeans_draws_from_the_positive_cluster_then_the_nearest(context: MiningContext) -> None:
    # The fixture's three clusters are orthogonal, so k-means with n_clusters=3 recovers exactly CLUSTERS.
    cluster_of = {index: name for name, members in CLUSTERS.items() for index in members}
    mined = KMeansMiner(n_clusters=3).mine(context, k=5, duplication=2, seed=0)
    for item in mined.items[:2]:
        negatives = negative_indices(context, item.hard_negatives)
        assert set(negatives[:3]) == {1, 2, 3}  # cat0's own cluster first
        assert len({cluster_of[index] for index in negatives[3:]}) == 1  # then one nearest cluster
    assert mined.items[0].hard_negatives != mined.items[1].hard_negatives  # each draw reshuffles
    assert mined.fill_notes == {"KMeansMiner.topped_up_negatives": 0}


def test_kmeans_clustering_is_kept_on_disk_and_read_back_exactly(
    context: MiningContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun reads the clustering instead of fitting KMeans again (no scikit-learn import): the same set; an
    unreadable entry is clustered again."""
    import sklearn.cluster

    first = KMeansMiner(n_clusters=3, cache_dir=str(tmp_path)).mine(context, k=5, duplication=2, seed=0)
    (entry,) = tmp_path.glob("*.npz")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("KMeans fitted again")

    monkeypatch.setattr(sklearn.cluster, "KMeans", refuse)
    again = KMeansMiner(n_clusters=3, cache_dir=str(tmp_path)).mine(context, k=5, duplication=2, seed=0)
    assert again.digest() == first.digest()
    with pytest.raises(AssertionError, match="fitted again"):  # another seed is another entry
        KMeansMiner(n_clusters=3, cache_dir=str(tmp_path)).mine(context, k=5, duplication=2, seed=1)
    monkeypatch.undo()
    entry.write_bytes(b"not an npz file")
    assert KMeansMiner(n_clusters=3, cache_dir=str(tmp_path)).mine(context, k=5, duplication=2, seed=0).digest() == (
        first.digest()
    )
    np.savez(entry.with_suffix(""), assignment=np.zeros(2, dtype=int), centroid_distance=np.zeros((3, 3)))
    assert KMeansMiner(n_clusters=3, cache_dir=str(tmp_path)).mine(context, k=5, duplication=2, seed=0).digest() == (
        first.digest()
    )  # an entry of the wrong shape (another catalogue's, a hand edit) is clustered again too
    assert KMeansMiner(n_clusters=3).mine(context, k=5, duplication=2, seed=0).digest() == first.digest()


def test_kmeans_clamps_clusters_to_categories(context: MiningContext) -> None:
    mined = KMeansMiner(n_clusters=50).mine(context, k=2, duplication=1, seed=0)
    assert mined.fill_notes == {"KMeansMiner.topped_up_negatives": 0}


def test_positive_aware_skips_candidates_too_close_to_the_positive(context: MiningContext) -> None:
    # Worked by hand: query 0 = unit(e0 + 0.2 e7) scores cat0..cat3 (cat j = unit(e0 + 0.1 j e3)) at
    # 1/sqrt(1.04) / sqrt(1 + 0.01 j^2) = 0.9806, 0.9757, 0.9615, 0.9392, and every other category at 0.
    # pct=0.95 puts the threshold at 0.95 * 0.9806 = 0.9316: cat1-cat3 are too close, the zeros follow by index.
    miner = PositiveAwareMiner(pct=0.95)
    assert miner.pool(context, 0, [0]) == [4, 5, 6, 7, 8, 9]
    mined = miner.mine(context, k=3, duplication=1, seed=0)
    assert negative_indices(context, mined.items[0].hard_negatives) == [4, 5, 6]
    # pct=0.96: threshold 0.9414, so cat3 (0.9392) passes and comes first.
    assert PositiveAwareMiner(pct=0.96).pool(context, 0, [0]) == [3, 4, 5, 6, 7, 8, 9]


def test_positive_aware_with_pct_one_keeps_near_positives(context: MiningContext) -> None:
    assert PositiveAwareMiner(pct=1.0).pool(context, 0, [0])[:3] == [1, 2, 3]


def test_adversarial_pool_holds_what_outranks_the_positive(context: MiningContext) -> None:
    miner = AdversarialMiner(margin=2)
    pool = miner.pool(context, 10, [0])
    assert pool[0] == 5 and set(pool[:3]) == {4, 5, 6}  # cluster b outranks cat0, hardest first
    assert pool[3:] == [1, 2]  # then the two runners-up below cat0
    assert miner.pool(context, 0, [0]) == [1, 2]  # positive ranked first: only the margin
    with pytest.raises(ConfigError, match="AdversarialMiner found only 0"):
        AdversarialMiner(margin=0, strict=True).mine(context, k=1, duplication=1, seed=0)


@pytest.mark.parametrize(("hard_share", "n_hard"), [(0.5, 2), (0.25, 1), (1.0, 4)])
def test_mixed_takes_its_hard_share_from_the_inner_miner(
    hard_share: float, n_hard: int, context: MiningContext
) -> None:
    miner = MixedMiner(hard=CosineMiner(), hard_share=hard_share)
    mined = miner.mine(context, k=4, duplication=1, seed=0)
    negatives = negative_indices(context, mined.items[0].hard_negatives)
    assert negatives[:n_hard] == [1, 2, 3, 4][:n_hard]
    assert len(set(negatives)) == 4


def test_mixed_prepares_and_describes_its_inner_miner(context: MiningContext) -> None:
    config = OmegaConf.load(MINER_CONF / "mixed.yaml")
    config.hard = {"_target_": "experiments.miners.kmeans.KMeansMiner", "n_clusters": 3}
    miner = instantiate(config)
    assert isinstance(miner, MixedMiner)
    miner.mine(context, k=2, duplication=1, seed=0)  # would fail if the inner KMeans was never fitted
    assert isinstance(miner.hard, KMeansMiner) and miner.hard.n_clusters == 3
