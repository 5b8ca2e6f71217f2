"""Datasets for the offline pipeline: public loaders, the sample catalogue, synthetic users."""
