"""The state store, as the SDK's state example uses it: save, get, delete."""

from dapr.clients import DaprClient

with DaprClient() as client:
    client.save_state(store_name="statestore", key="order_1", value="250")
    print(f"Result after get: {client.get_state(store_name='statestore', key='order_1').data!r}")
    client.delete_state(store_name="statestore", key="order_1")
    print(f"Result after delete: {client.get_state(store_name='statestore', key='order_1').data!r}")
