from django.urls import path

from . import views

app_name = "insights"

urlpatterns = [
    path("<slug:slug>/data/", views.imports, name="imports"),
    path("<slug:slug>/data/<int:pk>/", views.import_detail, name="import_detail"),
    path("<slug:slug>/data/<int:pk>/start/", views.import_start, name="import_start"),
    path("<slug:slug>/data/<int:pk>/retry/", views.import_retry, name="import_retry"),
    path("<slug:slug>/data/<int:pk>/rejected.csv", views.import_rejected, name="import_rejected"),
    path("<slug:slug>/data/<int:pk>/file", views.import_file, name="import_file"),
    path("<slug:slug>/event-map/", views.event_map, name="event_map"),
    # Not …/assumptions/<pk>/: the board serves that one (planning:assumption, the item alone).
    path("<slug:slug>/assumptions/<int:pk>/history/", views.assumption_detail, name="assumption"),
    path(
        "<slug:slug>/assumptions/<int:pk>/retest/",
        views.assumption_retest,
        name="assumption_retest",
    ),
    path("<slug:slug>/retest/", views.plan_retest, name="plan_retest"),
    path("<slug:slug>/test-preview/", views.test_preview, name="test_preview"),
    path("<slug:slug>/retests/<int:pk>/", views.retest_detail, name="retest"),
    path("<slug:slug>/assumption-map/", views.assumption_map, name="assumption_map"),
]

# The Customers page (DOMAIN §8, §9); its sub-pages are the imports and the event map above.
from . import views_customers  # noqa: E402

urlpatterns += [
    path("<slug:slug>/customers/", views_customers.customers, name="customers"),
    path(
        "<slug:slug>/customers/assumption/",
        views_customers.customers_assumption,
        name="customers_assumption",
    ),
]
