"""A publisher, as the SDK's pub/sub example: `orders` events on `pubsub`."""

import json

from dapr.clients import DaprClient

with DaprClient() as client:
    for order_id in range(1, 4):
        order = {"orderId": order_id}
        client.publish_event(pubsub_name="pubsub", topic_name="orders", data=json.dumps(order),
                             data_content_type="application/json")  # fmt: skip
        print(f"Published data: {json.dumps(order)}", flush=True)
