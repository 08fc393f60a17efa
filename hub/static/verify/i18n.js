// The verifier page's words in Indonesian and English: steps, verdicts and what each code means.
"use strict";
(function (J) {
  const T = {
    id: {
      title: "Periksa bundel Jejak",
      intro: "Halaman ini memeriksa bundel audit Jejak (.jejak) di peramban Anda, tanpa internet dan tanpa mengirim apa pun. Aturannya: docs/FORMAT.md.",
      bundle: "Bundel yang diperiksa",
      older: "Bundel lama untuk dibandingkan (opsional, --against)",
      hubkey: "Kunci publik hub yang Anda percaya (hex, opsional, --hub-key)",
      drop: "Pilih berkas atau jatuhkan di sini",
      run: "Periksa",
      verified: "TERVERIFIKASI",
      failed: "GAGAL",
      exit: "kode keluar",
      steps: "Yang diperiksa, langkah demi langkah",
      nofile: "Pilih bundel dulu.",
      badkey: "Kunci hub harus 64 digit hex.",
      "bundle.parse": "Bundel dibaca: {bytes} bita CBOR deterministik, semua kolom wajib ada, tidak ada kolom asing.",
      "bundle.hubkey": "Kunci hub: {key} (id hub {id}){pinned}.",
      pinned: ", dipatok oleh Anda",
      "log.keys": "Perangkat {device}: daftar kunci ({n} catatan) dimulai dari genesis yang kuncinya menurunkan id perangkat, tiap rotasi ditandatangani kunci sebelumnya.",
      "log.records": "Perangkat {device}: {n} catatan (seq terverifikasi {first}..{last}) — urutan seq, tautan prev, penghitung boot, pencabutan ({revoked}) dan tanda tangan.",
      "log.bodies": "Perangkat {device}: {n} isi terpisah, masing-masing cocok dengan ringkasan yang ditandatangani dan milik catatan yang isinya terpisah.",
      fork: "Bukti percabangan {i}: perangkat {device} seq {seq}.",
      "checkpoints.split": "Dua checkpoint berukuran {size} dengan akar berbeda.",
      checkpoint: "Checkpoint {i}: ukuran {size}, akar {root}..., waktu {time}, ditandatangani hub.",
      consistency: "Bukti konsistensi dari ukuran {first} ke {second}.",
      receipts: "Tanda terima: {ok} dari {n} membuktikan catatannya ada di log hub yang ditandatangani.",
      against: "Log tumbuh secara konsisten dari ukuran {from} ke {to} (dibanding bundel lama).",
      none: "tidak ada",
      notso: "Tidak terpenuhi:",
      codes: {
        MALFORMED: "Bita yang bukan struktur Jejak yang utuh dan deterministik.",
        VERIFICATION_FAILED: "Pemeriksaan gagal.",
        INVALID_SIGNATURE: "Tanda tangan tidak cocok dengan kunci yang berlaku.",
        BROKEN_CHAIN: "Rantai catatan putus: celah, prev salah, perangkat lain, seq berulang, atau boot mundur.",
        FORK_DETECTED: "Perangkat menandatangani dua catatan berbeda pada seq yang sama.",
        INVALID_PROOF: "Bukti inklusi atau konsistensi tidak mengarah ke akar yang ditandatangani.",
        INVALID_CHECKPOINT: "Checkpoint tidak sah: tanda tangan salah, hub lain, atau log hub ditulis ulang.",
        UNKNOWN_KEY: "Tidak ada kunci untuk memeriksa: tanpa genesis, atau tanpa kunci hub.",
        REVOKED_KEY: "Catatan pada atau setelah titik pencabutan kuncinya.",
      },
    },
    en: {
      title: "Check a Jejak bundle",
      intro: "This page checks a Jejak audit bundle (.jejak) in your browser, offline, sending nothing anywhere. The rules: docs/FORMAT.md.",
      bundle: "Bundle to check",
      older: "Older bundle to compare with (optional, --against)",
      hubkey: "Hub public key you trust (hex, optional, --hub-key)",
      drop: "Choose a file or drop it here",
      run: "Check",
      verified: "VERIFIED",
      failed: "FAILED",
      exit: "exit code",
      steps: "What was checked, step by step",
      nofile: "Choose a bundle first.",
      badkey: "The hub key must be 64 hex digits.",
      "bundle.parse": "Bundle read: {bytes} bytes of deterministic CBOR, every required field present, no unknown field.",
      "bundle.hubkey": "Hub key: {key} (hub id {id}){pinned}.",
      pinned: ", pinned by you",
      "log.keys": "Device {device}: the key list (records: {n}) starts at a genesis whose key derives the device id; each rotation is signed by the key before it.",
      "log.records": "Device {device}: records: {n} (verified seq {first}..{last}) — seq order, prev links, boot counter, revocation ({revoked}) and signatures.",
      "log.bodies": "Device {device}: detached bodies: {n}, each matching its signed digest and belonging to a detached record.",
      fork: "Fork evidence {i}: device {device} seq {seq}.",
      "checkpoints.split": "Two checkpoints of size {size} with different roots.",
      checkpoint: "Checkpoint {i}: size {size}, root {root}..., time {time}, signed by the hub.",
      consistency: "Consistency proof from size {first} to {second}.",
      receipts: "Receipts: {ok} of {n} prove their record is in the hub's signed log.",
      against: "The log grew consistently from size {from} to {to} (compared with the older bundle).",
      none: "none",
      notso: "Does not hold:",
      codes: {
        MALFORMED: "Bytes that are not a well-formed, deterministic Jejak structure.",
        VERIFICATION_FAILED: "A check failed.",
        INVALID_SIGNATURE: "A signature does not verify with the key in force.",
        BROKEN_CHAIN: "The chain of records is broken: a gap, a wrong prev, another device, a repeated seq or the boot counter going backwards.",
        FORK_DETECTED: "The device signed two different records at the same seq.",
        INVALID_PROOF: "An inclusion or consistency proof does not lead to the signed root.",
        INVALID_CHECKPOINT: "A checkpoint is not valid: bad signature, another hub, or the hub rewrote its log.",
        UNKNOWN_KEY: "No key to check with: no genesis, or no hub key.",
        REVOKED_KEY: "A record at or past its key's revocation point.",
      },
    },
  };

  // "{name}" placeholders filled from vars; null and undefined read as "none".
  function say(lang, key, vars) {
    const words = T[lang] || T.en;
    const text = words[key] || key;
    return text.replace(/\{(\w+)\}/g, (_, name) => {
      if (name === "pinned") return vars.pinned ? words.pinned : "";
      const v = vars[name];
      return v === null || v === undefined || v === "" ? words.none : String(v);
    });
  }

  J.i18n = { T, say, languages: ["id", "en"] };
})(globalThis.Jejak);
