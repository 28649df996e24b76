from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SequencerOptions(_message.Message):
    __slots__ = ("increment",)
    class Increment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WEAK: _ClassVar[SequencerOptions.Increment]
        STRONG: _ClassVar[SequencerOptions.Increment]
    WEAK: SequencerOptions.Increment
    STRONG: SequencerOptions.Increment
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    increment: SequencerOptions.Increment
    def __init__(self, increment: _Optional[_Union[SequencerOptions.Increment, str]] = ...) -> None: ...

class GetNextIdRequest(_message.Message):
    __slots__ = ("store_name", "key", "options", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    key: str
    options: SequencerOptions
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, store_name: _Optional[str] = ..., key: _Optional[str] = ..., options: _Optional[_Union[SequencerOptions, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetNextIdResponse(_message.Message):
    __slots__ = ("next_id",)
    NEXT_ID_FIELD_NUMBER: _ClassVar[int]
    next_id: int
    def __init__(self, next_id: _Optional[int] = ...) -> None: ...

class TryLockRequest(_message.Message):
    __slots__ = ("store_name", "resource_id", "lock_owner", "expiry_in_seconds")
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_OWNER_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    resource_id: str
    lock_owner: str
    expiry_in_seconds: int
    def __init__(self, store_name: _Optional[str] = ..., resource_id: _Optional[str] = ..., lock_owner: _Optional[str] = ..., expiry_in_seconds: _Optional[int] = ...) -> None: ...

class TryLockResponse(_message.Message):
    __slots__ = ("success", "fencing_token")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    success: bool
    fencing_token: int
    def __init__(self, success: _Optional[bool] = ..., fencing_token: _Optional[int] = ...) -> None: ...

class RenewLockRequest(_message.Message):
    __slots__ = ("store_name", "resource_id", "lock_owner", "expiry_in_seconds")
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_OWNER_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    resource_id: str
    lock_owner: str
    expiry_in_seconds: int
    def __init__(self, store_name: _Optional[str] = ..., resource_id: _Optional[str] = ..., lock_owner: _Optional[str] = ..., expiry_in_seconds: _Optional[int] = ...) -> None: ...

class RenewLockResponse(_message.Message):
    __slots__ = ("status",)
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SUCCESS: _ClassVar[RenewLockResponse.Status]
        LOCK_DOES_NOT_EXIST: _ClassVar[RenewLockResponse.Status]
        LOCK_BELONGS_TO_OTHERS: _ClassVar[RenewLockResponse.Status]
        INTERNAL_ERROR: _ClassVar[RenewLockResponse.Status]
    SUCCESS: RenewLockResponse.Status
    LOCK_DOES_NOT_EXIST: RenewLockResponse.Status
    LOCK_BELONGS_TO_OTHERS: RenewLockResponse.Status
    INTERNAL_ERROR: RenewLockResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: RenewLockResponse.Status
    def __init__(self, status: _Optional[_Union[RenewLockResponse.Status, str]] = ...) -> None: ...
