"""Secrets, locks and an output binding, as the SDK's examples call them."""

import grpc
from dapr.clients import DaprClient

with DaprClient() as client:
    secret = client.get_secret(store_name="localsecretstore", key="db-password")
    print(f"Secret: {secret.secret}", flush=True)
    try:
        client.get_secret(store_name="localsecretstore", key="admin-password")
    except grpc.RpcError as error:  # the SDK passes on the sidecar's status
        print(f"Denied: {error.code().name}", flush=True)
    lock = client.try_lock(store_name="lockstore", resource_id="order-1", lock_owner="me",
                           expiry_in_seconds=60)  # fmt: skip
    print(f"Lock acquired: {lock.success}", flush=True)
    again = client.try_lock(store_name="lockstore", resource_id="order-1", lock_owner="you",
                            expiry_in_seconds=60)  # fmt: skip
    print(f"Lock taken by another: {not again.success}", flush=True)
    unlocked = client.unlock(store_name="lockstore", resource_id="order-1", lock_owner="me")
    print(f"Unlock: {unlocked.status.name}", flush=True)
    client.invoke_binding(binding_name="orders-cache", operation="create", data="shipped",
                          binding_metadata={"key": "order-1"})  # fmt: skip
    print("Binding invoked", flush=True)
