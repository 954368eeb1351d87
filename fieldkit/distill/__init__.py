"""Converters between representations. PVD: any field architecture distilled into any other,
and fields to and from Gaussian splats."""
from fieldkit.distill.config import ConvertConfig, StageSchedule
from fieldkit.distill.convert import Converter, make_converter

__all__ = ["ConvertConfig", "Converter", "StageSchedule", "make_converter"]
