"""Invokes another app by its id, as the SDK's invoke-simple caller."""

import json

from dapr.clients import DaprClient

with DaprClient() as client:
    response = client.invoke_method("invoke-receiver", "my-method",
                                    data=json.dumps({"id": 1, "message": "hello world"}),
                                    content_type="application/json", http_verb="POST")  # fmt: skip
    print(f"Answer: {response.text()} ({response.status_code})", flush=True)
