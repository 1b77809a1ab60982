"""Prefect orchestration of the DVC pipeline: flow `sara`, deployment `ablation-sweep`, local services.

Orchestration imports the library, never the other way round; no stage is re-implemented here.
"""
