"""Package, upload, create, scale, invoke and delete the SageMaker Triton multi-model endpoint.

Run `python -m deploy --help`. See docs/deploy.md.
"""
