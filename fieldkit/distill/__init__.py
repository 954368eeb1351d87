"""Converters between representations. PVD: any field architecture distilled into any other."""
from fieldkit.distill.config import ConvertConfig, StageSchedule
from fieldkit.distill.convert import Converter

__all__ = ["ConvertConfig", "Converter", "StageSchedule"]
