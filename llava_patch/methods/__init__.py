"""Methods, one file each, registered by name with `@register_method` (see `llava_patch.registry`,
whose import line names every member). Vision-stage methods subclass `base.Selector`; LLM-stage
methods subclass `base.LanguageModelMethod`."""
