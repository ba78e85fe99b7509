# A package on purpose: without it pytest (--import-mode=importlib) names these modules
# `operator.tests.*` and registers a stub `operator` module that shadows the standard library's.
