"""Invoked by app id, as the SDK's invoke-simple receiver: a gRPC app on APP_PORT."""

import os

from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse

app = App()


@app.method(name="my-method")  # type: ignore[untyped-decorator]
def my_method(request: InvokeMethodRequest) -> InvokeMethodResponse:
    caller = request.metadata.get("dapr-caller-app-id", [""])[0]
    print(f"my-method called by {caller!r} with {request.text()}", flush=True)
    return InvokeMethodResponse(b"INVOKE_RECEIVED", "text/plain; charset=UTF-8")


app.run(int(os.environ["APP_PORT"]))
