"""Live progress for status, folded from the workers' metrics pages (progress.py)."""

from __future__ import annotations

from llmtj_operator.progress import due, fold, samples

POD0 = """# TYPE llmtj_step gauge
llmtj_step{job="j",namespace="n",pod="j-worker-0",rank="0"} 120.0
llmtj_step{job="j",namespace="n",pod="j-worker-0",rank="1"} 120.0
# TYPE llmtj_train_loss gauge
llmtj_train_loss{job="j",namespace="n",pod="j-worker-0",rank="0"} 3.14159
llmtj_train_loss{job="j",namespace="n",pod="j-worker-0",rank="1"} 3.14159
# TYPE llmtj_tokens_per_second gauge
llmtj_tokens_per_second{job="j",namespace="n",pod="j-worker-0",rank="0"} 1000.0
llmtj_tokens_per_second{job="j",namespace="n",pod="j-worker-0",rank="1"} 1000.0
# TYPE llmtj_checkpoint_last_timestamp_seconds gauge
llmtj_checkpoint_last_timestamp_seconds{job="j",namespace="n",pod="j-worker-0",rank="0"} 1.7966e+09
# TYPE llmtj_world_size gauge
llmtj_world_size{job="j",namespace="n",pod="j-worker-0",rank="0"} 4.0
"""
POD1 = POD0.replace("j-worker-0", "j-worker-1").replace('rank="0"', 'rank="2"').replace('rank="1"', 'rank="3"') \
    .replace("120.0", "121.0").replace("3.14159", "3.1").replace("1.7966e+09", "1.7965e+09")


def test_fold_takes_the_lead_ranks_step_and_loss_and_sums_throughput():
    out = fold([samples(POD0), samples(POD1)])
    assert out == {"step": 121, "loss": 3.1, "tokensPerSecond": 4000.0,
                   "lastCheckpointTime": "2026-12-06T23:33:20Z"}  # 1.7966e9 s: the newest save of any rank


def test_nothing_answered_changes_nothing():
    assert fold([[], []]) == {}
    assert fold([samples("# TYPE other gauge\nother 1\n")]) == {}


def test_refresh_at_most_once_per_period():
    assert due("ns", "job-x", now=1000.0) is True
    assert due("ns", "job-x", now=1010.0) is False
    assert due("ns", "job-y", now=1010.0) is True  # per job
    assert due("ns", "job-x", now=1031.0) is True
