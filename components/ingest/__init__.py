"""ingest: an image folder, a Parquet table or a manifest becomes one checked, split dataset."""
