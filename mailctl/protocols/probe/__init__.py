"""The probe's wire side: bounded connections (`link`) and the pre-login dialogues (`dialogue`)."""

from mailctl.protocols.probe.dialogue import DialogueFacts, converse
from mailctl.protocols.probe.link import LinkLimits

__all__ = ["DialogueFacts", "LinkLimits", "converse"]
