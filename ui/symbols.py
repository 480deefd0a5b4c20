"""Symbols on the small tool buttons: characters every common font has (emoji need an emoji font), each with the
tooltip that app_ui's script gives it."""

REFRESH = "↻"
RANDOM_SEED = "⚄"
REUSE_SEED = "♻"

TOOLTIPS = {
    REFRESH: "Refresh the list",
    RANDOM_SEED: "Random seed (-1)",
    REUSE_SEED: "Reuse the seed of the last image",
}
