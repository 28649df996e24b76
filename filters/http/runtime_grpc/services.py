"""Every method this server answers: `/package.Service/Method` -> how to run it.

`dapr.proto.runtime.v1.Dapr` (the methods mecha implements; the others of that service
answer UNIMPLEMENTED) and mecha's own `mecha.runtime.v1.Mecha`.
"""

from __future__ import annotations

from dapr.proto.runtime.v1 import (
    binding_pb2,
    configuration_pb2,
    dapr_pb2,
    invoke_pb2,
    lock_pb2,
    metadata_pb2,
    pubsub_pb2,
    secret_pb2,
    state_pb2,
)

from filters.http.runtime_grpc import (
    blocks,
    configuration,
    invoke,
    mecha,
    mecha_pb2,
    meta,
    pubsub,
    state,
    subscribe,
)
from filters.http.runtime_grpc.context import Kind, Method, unary

DAPR = "/dapr.proto.runtime.v1.Dapr/"
SERVICES = (DAPR.encode(), mecha.SERVICE.encode())
"""Path prefixes this server owns: any other method under them is UNIMPLEMENTED."""

_DAPR: dict[str, Method] = {
    "InvokeService": unary(invoke_pb2.InvokeServiceRequest, invoke.invoke_service),
    "GetState": unary(state_pb2.GetStateRequest, state.get_state),
    "GetBulkState": unary(state_pb2.GetBulkStateRequest, state.get_bulk_state),
    "SaveState": unary(state_pb2.SaveStateRequest, state.save_state),
    "QueryStateAlpha1": unary(state_pb2.QueryStateRequest, state.query_state),
    "DeleteState": unary(state_pb2.DeleteStateRequest, state.delete_state),
    "DeleteBulkState": unary(state_pb2.DeleteBulkStateRequest, state.delete_bulk_state),
    "ExecuteStateTransaction": unary(
        state_pb2.ExecuteStateTransactionRequest, state.execute_transaction
    ),
    "PublishEvent": unary(pubsub_pb2.PublishEventRequest, pubsub.publish_event),
    "BulkPublishEvent": unary(pubsub_pb2.BulkPublishRequest, pubsub.bulk_publish),
    "BulkPublishEventAlpha1": unary(pubsub_pb2.BulkPublishRequest, pubsub.bulk_publish),
    "SubscribeTopicEventsAlpha1": Method(
        Kind.BIDI, pubsub_pb2.SubscribeTopicEventsRequestAlpha1, subscribe.subscribe_topic_events
    ),
    "InvokeBinding": unary(binding_pb2.InvokeBindingRequest, blocks.invoke_binding),
    "GetSecret": unary(secret_pb2.GetSecretRequest, blocks.get_secret),
    "GetBulkSecret": unary(secret_pb2.GetBulkSecretRequest, blocks.get_bulk_secret),
    "TryLockAlpha1": unary(lock_pb2.TryLockRequest, blocks.try_lock),
    "UnlockAlpha1": unary(lock_pb2.UnlockRequest, blocks.unlock),
    "GetMetadata": unary(metadata_pb2.GetMetadataRequest, meta.get_metadata),
    "SetMetadata": unary(metadata_pb2.SetMetadataRequest, meta.set_metadata),
    "Shutdown": unary(dapr_pb2.ShutdownRequest, meta.shutdown),
}
for _suffix in ("", "Alpha1"):
    _DAPR["GetConfiguration" + _suffix] = unary(
        configuration_pb2.GetConfigurationRequest, configuration.get_configuration
    )
    _DAPR["SubscribeConfiguration" + _suffix] = Method(
        Kind.SERVER_STREAM,
        configuration_pb2.SubscribeConfigurationRequest,
        configuration.subscribe_configuration,
    )
    _DAPR["UnsubscribeConfiguration" + _suffix] = unary(
        configuration_pb2.UnsubscribeConfigurationRequest, configuration.unsubscribe_configuration
    )

_MECHA: dict[str, Method] = {
    "GetNextId": unary(mecha_pb2.GetNextIdRequest, mecha.get_next_id),
    "TryLock": unary(mecha_pb2.TryLockRequest, mecha.try_lock),
    "RenewLock": unary(mecha_pb2.RenewLockRequest, mecha.renew_lock),
}

METHODS: dict[bytes, Method] = {
    **{(DAPR + name).encode(): method for name, method in _DAPR.items()},
    **{(mecha.SERVICE + name).encode(): method for name, method in _MECHA.items()},
}
