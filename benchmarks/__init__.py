"""Side-by-side measurements (`make bench`): compression, input pipeline, pipeline time, fan-out, pretraining."""
