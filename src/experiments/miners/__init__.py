"""Hard-negative miners (``miner=`` group): one strategy per module, all behind ``base.Miner``."""
