"""A Flask app for the worker tests: JSON, redirects, sessions, streaming."""
from flask import Flask, Response, jsonify, redirect, request, session, stream_with_context, url_for

app = Flask(__name__)
app.secret_key = "test-only-not-secret-appstack-flaskapp"


@app.route("/json", methods=["GET", "POST"])
def json_view():
    if request.method == "POST":
        data = request.get_json()
        return jsonify(received=data, length=request.content_length)
    return jsonify(hello="world", args=request.args.to_dict())


@app.route("/go")
def go():
    return redirect(url_for("json_view", via="redirect"))


@app.route("/count")
def count():
    session["n"] = session.get("n", 0) + 1
    resp = jsonify(n=session["n"])
    resp.set_cookie("flavour", "plain")
    return resp


@app.route("/stream")
def stream():
    def gen():
        for i in range(50):
            yield f"row {i}\n"
    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.route("/chunked-upload", methods=["POST"])
def chunked_upload():
    return jsonify(size=len(request.get_data()))


application = app
