from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("form/", views.form),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("file/", views.file),
    path("boom/", views.boom),
    path("admin/", admin.site.urls),
]
