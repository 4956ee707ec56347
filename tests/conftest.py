"""Settings for the whole suite."""

from hypothesis import settings

# No example may fail for taking long: the suite runs on shared, loaded machines, and a
# time limit is a timed assertion (speed is measured in bench/, against a reference).
settings.register_profile("kubecarbon")
settings.load_profile("kubecarbon")
