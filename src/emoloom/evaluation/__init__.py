"""Evaluation: decoding under the contract, metrics, baselines, the evaluation runner, screening. Never imports training."""
