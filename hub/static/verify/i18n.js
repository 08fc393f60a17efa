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
      "log.records": "Perangkat {device}: {n} catatan (seq terverifikasi {first}..{last}) — urutan seq, tautan prev, penghitung boot, titik pencabutan menurut keputusan hub ({revoked}) dan tanda tangan.",
      "log.bodies": "Perangkat {device}: {n} isi terpisah, masing-masing cocok dengan ringkasan yang ditandatangani dan milik catatan yang isinya terpisah.",
      hublog: "Log hub sendiri (id hub {id}): {ok} dari {n} catatan terverifikasi sebagai rantai dari genesis kunci hub, dan kepala yang disebut tiap checkpoint ada di dalamnya.",
      "decision.approve": "Keputusan hub #{seq}: menyetujui perangkat {device} (lokasi {site}, peran {role}, kunci {key}...) mulai seq {from}.",
      "decision.rotate": "Keputusan hub #{seq}: menerima rotasi kunci perangkat {device} pada seq {from} (kunci baru {key}...).",
      "decision.withdraw": "Keputusan hub #{seq}: menarik persetujuan perangkat {device}; catatannya mulai seq {from} ditolak.",
      "decision.revoke": "Keputusan hub #{seq}: mencabut kunci perangkat {device}; catatannya mulai seq {from} ditolak.",
      seal: "Segel hub atas seluruh bundel (waktu ekspor, deskripsi dan isinya) terverifikasi.",
      fork: "Bukti percabangan {i}: perangkat {device} seq {seq}.",
      "checkpoints.split": "Dua checkpoint berukuran {size} dengan akar berbeda.",
      checkpoint: "Checkpoint {i}: ukuran {size}, akar {root}..., waktu {time}, kepala log hub {hub}, ditandatangani hub.",
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
        UNKNOWN_KEY: "Kunci tidak dikenal: tanpa genesis, perangkat tanpa persetujuan hub, atau rotasi yang tidak diterima hub.",
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
      "log.records": "Device {device}: records: {n} (verified seq {first}..{last}) — seq order, prev links, boot counter, revocation point from the hub's decisions ({revoked}) and signatures.",
      "log.bodies": "Device {device}: detached bodies: {n}, each matching its signed digest and belonging to a detached record.",
      hublog: "The hub's own log (hub id {id}): {ok} of {n} records verified as a chain from the hub key's genesis, and it holds the head every checkpoint names.",
      "decision.approve": "Hub decision #{seq}: approves device {device} (site {site}, role {role}, key {key}...) from seq {from}.",
      "decision.rotate": "Hub decision #{seq}: accepts the key rotation of device {device} at seq {from} (new key {key}...).",
      "decision.withdraw": "Hub decision #{seq}: withdraws the approval of device {device}; its records from seq {from} on are refused.",
      "decision.revoke": "Hub decision #{seq}: revokes the key of device {device}; its records from seq {from} on are refused.",
      seal: "The hub's seal over the whole bundle (export time, description and contents) verifies.",
      fork: "Fork evidence {i}: device {device} seq {seq}.",
      "checkpoints.split": "Two checkpoints of size {size} with different roots.",
      checkpoint: "Checkpoint {i}: size {size}, root {root}..., time {time}, hub log head {hub}, signed by the hub.",
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
        UNKNOWN_KEY: "Unknown key: no genesis, a device the hub did not approve, or a rotation the hub did not accept.",
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
