"""The KFP pipeline: the DAG, its run parameters, compiling, submitting and running it locally."""
