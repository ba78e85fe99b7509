"""Sparkplug B 3.0, sans I/O: payload codec, topic names and the host STATE payload.

Pure functions over frozen dataclasses; nothing here touches a network or a clock.
"""

from plantline.connectors.sparkplug.codec import (
    UINT32_FIELDS,
    DataSet,
    DataType,
    MetaData,
    Metric,
    Payload,
    Properties,
    PropertyValue,
    SparkplugDecodeError,
    Template,
    TemplateParameter,
    Uint32Field,
    apply_datatype,
    decode,
    encode,
    encode_ddata,
)
from plantline.connectors.sparkplug.topics import (
    NAMESPACE,
    HostState,
    MessageType,
    Topic,
    format_topic,
    parse_state_payload,
    parse_topic,
    state_payload_offline,
    state_payload_online,
)

__all__ = [
    "NAMESPACE",
    "UINT32_FIELDS",
    "DataSet",
    "DataType",
    "HostState",
    "MessageType",
    "MetaData",
    "Metric",
    "Payload",
    "Properties",
    "PropertyValue",
    "SparkplugDecodeError",
    "Template",
    "TemplateParameter",
    "Topic",
    "Uint32Field",
    "apply_datatype",
    "decode",
    "encode",
    "encode_ddata",
    "format_topic",
    "parse_state_payload",
    "parse_topic",
    "state_payload_offline",
    "state_payload_online",
]
