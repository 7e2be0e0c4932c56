"""Preprocessors at Ray's path (``ray.data.preprocessors``): statistics gathered in
parallel over a dataset by ``fit`` (its aggregations, never by collecting the rows), then
applied batch by batch by ``transform``. Fitted preprocessors pickle.

Example::

    from zactor.data.preprocessors import StandardScaler
    scaler = StandardScaler(columns=["x"])
    scaled = scaler.fit_transform(ds)
"""

from zactor.data.preprocessors._base import Preprocessor, PreprocessorNotFittedException
from zactor.data.preprocessors._encoders import LabelEncoder, OneHotEncoder, OrdinalEncoder
from zactor.data.preprocessors._misc import Chain, Concatenator, Normalizer, SimpleImputer
from zactor.data.preprocessors._scalers import (
    MaxAbsScaler,
    MinMaxScaler,
    RobustScaler,
    StandardScaler,
)

__all__ = ["Chain", "Concatenator", "LabelEncoder", "MaxAbsScaler", "MinMaxScaler",
           "Normalizer", "OneHotEncoder", "OrdinalEncoder", "Preprocessor",
           "PreprocessorNotFittedException", "RobustScaler", "SimpleImputer",
           "StandardScaler"]
