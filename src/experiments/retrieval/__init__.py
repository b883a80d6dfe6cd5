"""The first retrieval stage (``retrieval=`` group): categories indexed once, searched per query."""
