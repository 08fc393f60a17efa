"""The hub benchmark runs in its quick form and reports every figure beside its ceiling."""

from hub.bench import run


def test_quick_bench_reports_figures():
    figures = run(quick=True)
    assert figures["raw_verify_per_s"] > 0
    assert figures["ingest_lmdb_per_s"] > 0
    assert 0 < figures["ingest_lmdb_vs_raw_verify"] < 2
    assert isinstance(figures["ingest_postgres_per_s"], float), figures["ingest_postgres_per_s"]
    assert figures["proofs"]["inclusion_verify_per_s"] > 0
    tiles = figures["store_proofs"]
    assert tiles["random_inclusion_tiles_from_lmdb_per_s"] > 0
    assert tiles["tree_bytes_per_leaf_tiled"] < tiles["tree_bytes_per_leaf_in_memory"] / 16
    assert figures["restart"]["leaves"] == 100_000 and figures["restart"]["start_s"] > 0
    for store in ("lmdb", "postgres"):
        cores = figures["ingest_cores"][store]
        assert isinstance(cores, dict), cores  # a missing store is a failure, not a note
        assert cores["one_core_per_s"] > 0 and cores["cores_per_s"] > 0
        assert cores["cores_vs_raw_verify_of_cores"] > 0 and cores["cores_workers_cpu_us"] > 0
        assert cores["raw_verify_on_cores_per_s"] > 0 and cores["cores_vs_raw_verify_on_cores"] > 0
    assert figures["cross_log"]["ingest_all_cores_per_s"] > 0 and figures["cross_log"]["all_cores_vs_one"] > 0
    follow = figures["follow_region"]
    assert follow["first"]["reverify_records"] == 20 * 50 and follow["grown"]["reverify_records"] == 20 * 5
    assert follow["unchanged"]["checkpoints_requests"] == 1 and follow["grown"]["checkpoints_requests"] == 2
    assert follow["drill_down"]["requests"] == 2
    summary = figures["heads_summary"]
    assert summary["summary_root_bytes"] < 48 < summary["heads_exchange_bytes"]
    assert 0 < summary["bucket_logs"] <= summary["logs"]
    storage = figures["postgres_storage"]
    assert isinstance(storage, dict), storage
    assert 0 < storage["partitioned_bytes_per_record"] < storage["unpartitioned_bytes_per_record"]
    assert storage["archive"]["records"] > 0 and storage["archive"]["file.leaves_bytes_per_record"] == 32.0
    assert storage["archive"]["index_records_per_s"] > 0 and storage["archive"]["index_vs_archive"] > 0


def test_ingest_on_cores_gives_the_median_of_its_rounds(tmp_path):
    import statistics
    import uuid

    from hub.bench import ingest_on_cores
    from hub.store import LmdbHubStore

    made = []

    def make():
        made.append(LmdbHubStore(str(tmp_path / uuid.uuid4().hex)))
        return made[-1]

    figures = ingest_on_cores(400, {"lmdb": make}, rounds=3)
    lmdb = figures["lmdb"]
    assert figures["rounds"] == 3 and len(lmdb["one_core_vs_raw_verify_rounds"]) == 3
    assert len(made) == 1 + 3 * 2  # the warm-up's store, then one core and every core in each round
    assert round(lmdb["one_core_vs_raw_verify"], 3) == round(statistics.median(lmdb["one_core_vs_raw_verify_rounds"]), 3)
    for key in ("cores_vs_raw_verify_of_cores", "cores_vs_raw_verify_on_cores"):
        assert round(lmdb[key], 3) == round(statistics.median(lmdb[f"{key}_rounds"]), 3)
    # The writer checks the tasks no worker has taken yet rather than wait (hub/verify.py `_Ahead`): of 400
    # records on a busy machine it may check every signature itself, and the workers' share is then nothing.
    assert lmdb["one_core_per_s"] > 0 and lmdb["cores_writer_cpu_us"] > 0 and lmdb["cores_workers_cpu_us"] >= 0
    assert 0 <= lmdb["cores_taken_by_writer"] <= 1
