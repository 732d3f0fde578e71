"""The harness around the library: config composition (Hydra), tracking (MLflow), the stage entry point."""
