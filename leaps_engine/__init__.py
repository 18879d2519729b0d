"""leaps-engine: LEAPS video model inversion (ICCV 2023), as a library and a CLI."""
