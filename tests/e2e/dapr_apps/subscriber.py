"""A subscriber, as the SDK's pub/sub example: a gRPC app on APP_PORT."""

import json
import os

from cloudevents.sdk.event import v1
from dapr.ext.grpc import App

app = App()


@app.subscribe(pubsub_name="pubsub", topic="orders")  # type: ignore[untyped-decorator]
def orders(event: v1.Event) -> None:
    raw = event.Data()
    data = json.loads(raw if isinstance(raw, str | bytes) else json.dumps(raw))
    print(f"Subscriber received: orderId={data['orderId']}", flush=True)


app.run(int(os.environ["APP_PORT"]))
