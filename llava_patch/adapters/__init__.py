"""Model-family adapters, one file each, registered with `@register_adapter` (see `llava_patch.registry`,
whose import line names every member)."""
