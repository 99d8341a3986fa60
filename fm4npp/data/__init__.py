"""Events: schema, generation (PYTHIA 8 + fast TPC simulation), shards, TPCpp-10M, serialization, tiers.

Torch is imported only in ``fm4npp.data.torch_dataset``.
"""
