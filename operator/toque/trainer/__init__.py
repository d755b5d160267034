"""The trainer runtime: the training pod's entrypoint (``toque train``).

It resolves and verifies the datasets, calls the user's ``module:function`` with a
``context.TrainContext``, logs everything to MLflow, and writes a JSON result to the pod's
termination message for the operator.
"""
