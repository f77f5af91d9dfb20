"""The dashboard's shared Streamlit code — the only part of `shelf` that imports Streamlit, so everything below it runs
without a browser. session: sign-in and roles, the model and store cached per process, tables, banners and filters;
results: a recognised photo's card, its context and deletion, region exports and comparisons. Pages import this
package as `ui` and use the names below."""
from shelf.serving.ui.results import (  # noqa: F401
    EXPORT_FORMATS,
    LARGE_EXPORT,
    confirm_photo_deletion,
    photo_actions,
    photo_result,
    region_comparison,
    region_exports,
    sku_line,
    top_k_table,
)
from shelf.serving.ui.session import (  # noqa: F401
    RECENT_PREVIEWS,
    TRUSTED_HEADER_ENV,
    account_box,
    acting_identity,
    auth_configured,
    backend_problem,
    box_file,
    clear_edits,
    colour_mode_picker,
    current_identity,
    facets_or_stop,
    keyed_editor,
    md_escape,
    model,
    parsed_box_file,
    reload_model,
    require_model,
    require_role,
    scope_filters,
    shows,
    sign_in_screen,
    store,
    stored_results_banner,
    table,
    thumbnails,
    use_router,
    weights_banner,
)
