from django.urls import path

from .views import assumptions, customers, data_source, imports

app_name = "insights"

urlpatterns = [
    path("<slug:slug>/data/", imports.imports, name="imports"),
    path("<slug:slug>/data/<int:pk>/", imports.import_detail, name="import_detail"),
    path("<slug:slug>/data/<int:pk>/start/", imports.import_start, name="import_start"),
    path("<slug:slug>/data/<int:pk>/retry/", imports.import_retry, name="import_retry"),
    path(
        "<slug:slug>/data/<int:pk>/valid-rows/",
        imports.import_valid_rows_only,
        name="import_valid_rows",
    ),
    path("<slug:slug>/data/<int:pk>/undo/", imports.import_undo, name="import_undo"),
    path("<slug:slug>/data/<int:pk>/rejected.csv", imports.import_rejected, name="import_rejected"),
    path("<slug:slug>/data/<int:pk>/file", imports.import_file, name="import_file"),
    path("<slug:slug>/event-map/", imports.event_map, name="event_map"),
    path("<slug:slug>/data-source/", data_source.data_source, name="data_source"),
    # Not …/assumptions/<pk>/: the board serves that one (planning:assumption, the item alone).
    path(
        "<slug:slug>/assumptions/<int:pk>/history/",
        assumptions.assumption_detail,
        name="assumption",
    ),
    path(
        "<slug:slug>/assumptions/<int:pk>/retest/",
        assumptions.assumption_retest,
        name="assumption_retest",
    ),
    path("<slug:slug>/retest/", assumptions.plan_retest, name="plan_retest"),
    path("<slug:slug>/test-preview/", assumptions.test_preview, name="test_preview"),
    path("<slug:slug>/retests/<int:pk>/", assumptions.retest_detail, name="retest"),
    path("<slug:slug>/assumption-map/", assumptions.assumption_map, name="assumption_map"),
    # The Customers page (DOMAIN §8, §9); its sub-pages are the imports and the event map above.
    path("<slug:slug>/customers/", customers.customers, name="customers"),
    path("<slug:slug>/customers/stages/", customers.board_stage_strip, name="stage_strip"),
    path("<slug:slug>/customers/read-again/", customers.customers_read_again, name="read_again"),
    path(
        "<slug:slug>/customers/assumption/",
        customers.customers_assumption,
        name="customers_assumption",
    ),
]
