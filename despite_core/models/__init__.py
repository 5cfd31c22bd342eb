"""DeSPITE encoders (one per modality, each built from its own config dataclass) and the
modality-keyed model. Importing this package imports torch; despite_core.data does not."""
