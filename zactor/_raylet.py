"""Ray's ``ray._raylet`` names that Ray programs import types from (Ray's own documentation
does: ``from ray._raylet import ObjectRefGenerator``). Private in Ray, kept for those
programs; new code should use ``zactor.ObjectRefGenerator``."""

from zactor._generator import DynamicObjectRefGenerator, ObjectRefGenerator
from zactor._object_ref import ObjectRef

__all__ = ["DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator"]
