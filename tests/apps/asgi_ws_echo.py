"""A plain ASGI application (what Django Channels runs under daphne or
uvicorn): a WebSocket echo at any path, and a short HTTP answer."""


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()                             # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": "echo " + event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
    elif scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"asgi http\n"})
