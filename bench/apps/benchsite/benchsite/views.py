from django.shortcuts import render

ITEMS = [{"name": f"item {i}", "price": i * 3 + 0.5} for i in range(30)]


def index(request):
    return render(request, "index.html", {"items": ITEMS, "title": "appstack bench"})
