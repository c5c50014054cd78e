"""Training the toy LLaVA's projector (`projector.train_projector`, command `llava-patch train-toy`)."""
