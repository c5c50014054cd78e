"""Selection methods, one file each, registered by name (see `llava_patch.registry`)."""
