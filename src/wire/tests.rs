//! The wire codec against SPEC §2's pinned bytes, and its refusals.

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
        .collect()
}

fn reason(err: MalformedPayload) -> MalformedReason {
    err.reason
}

#[test]
fn registration_pinned_bytes() {
    let reg = Registration {
        dek_id: 0x01020304,
        full_node_id: 0x05060708090A0B0C,
        local_epoch: 0x0D0E,
    };
    let pinned = unhex("01 01020304 05060708090a0b0c 0d0e");
    assert_eq!(reg.encode(), pinned);
    assert_eq!(Registration::decode(&pinned), Ok(reg));
    assert_eq!(reg.node_id16(), 0x0B0C);
}

#[test]
fn bootstrap_pinned_bytes() {
    let b = Bootstrap {
        storage_dek_id: 1,
        wrapped_storage: vec![],
        raft_dek_id: 2,
        wrapped_raft: vec![],
        batch_registry: vec![],
    };
    let pinned = unhex("01 00000001 00000000 00000002 00000000 00000000");
    assert_eq!(b.encode().as_deref(), Ok(&pinned[..]));
    assert_eq!(Bootstrap::decode(&pinned), Ok(b));
}

#[test]
fn bootstrap_with_keys_and_rows_layout() {
    let b = Bootstrap {
        storage_dek_id: 0x0a,
        wrapped_storage: vec![0xaa, 0xbb],
        raft_dek_id: 0x0b,
        wrapped_raft: vec![0xcc],
        batch_registry: vec![Registration {
            dek_id: 0x0a,
            full_node_id: 0x1122334455667788,
            local_epoch: 0x0102,
        }],
    };
    let pinned = unhex(
        "01 0000000a 00000002 aabb 0000000b 00000001 cc 00000001
         0000000a 1122334455667788 0102",
    );
    assert_eq!(b.encode().as_deref(), Ok(&pinned[..]));
    assert_eq!(Bootstrap::decode(&pinned), Ok(b));
}

#[test]
fn rotation_layout() {
    let r = Rotation {
        sub_tag: ROTATE_DEK,
        dek_id: 3,
        purpose: Purpose::Raft,
        wrapped: vec![0xee; 3],
        proposer: Registration {
            dek_id: 3,
            full_node_id: 0xabcd0001,
            local_epoch: 7,
        },
    };
    let pinned = unhex("01 01 00000003 02 00000003 eeeeee 00000003 00000000abcd0001 0007");
    assert_eq!(r.encode().as_deref(), Ok(&pinned[..]));
    assert_eq!(Rotation::decode(&pinned), Ok(r));
}

#[test]
fn decode_fast_path_agrees() {
    // Every length around the registration's, the right and wrong versions,
    // pseudo-random bodies: the one-step path and the reader agree on the
    // value and on the refusal.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    for len in 0..20 {
        for version in [WIRE_VERSION, 0, 2, 0xFF] {
            for _ in 0..50 {
                let mut payload: Vec<u8> = (0..len).map(|_| next()).collect();
                if let Some(first) = payload.first_mut() {
                    *first = version;
                }
                assert_eq!(
                    Registration::decode(&payload),
                    Registration::decode_by_reader(&payload),
                    "{payload:02x?}"
                );
            }
        }
    }
}

#[test]
fn registration_rejects_every_wrong_length_and_version() {
    let good = unhex("01 01020304 05060708090a0b0c 0d0e");
    for cut in 0..good.len() {
        assert!(
            matches!(
                reason(Registration::decode(&good[..cut]).unwrap_err()),
                MalformedReason::Truncated { .. }
            ),
            "cut at {cut}"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        reason(Registration::decode(&long).unwrap_err()),
        MalformedReason::TrailingBytes {
            offset: 15,
            count: 1
        }
    );
    let mut v2 = good;
    v2[0] = 0x02;
    assert_eq!(
        reason(Registration::decode(&v2).unwrap_err()),
        MalformedReason::WrongVersion(2)
    );
}

#[test]
fn bootstrap_every_truncation_point_is_malformed() {
    let b = Bootstrap {
        storage_dek_id: 1,
        wrapped_storage: vec![1; 5],
        raft_dek_id: 2,
        wrapped_raft: vec![2; 7],
        batch_registry: vec![
            Registration {
                dek_id: 1,
                full_node_id: 0x10001,
                local_epoch: 1,
            },
            Registration {
                dek_id: 2,
                full_node_id: 0x20002,
                local_epoch: 3,
            },
        ],
    };
    let bytes = b.encode().expect("encodable");
    assert_eq!(Bootstrap::decode(&bytes).as_ref(), Ok(&b));
    for cut in 0..bytes.len() {
        let err = Bootstrap::decode(&bytes[..cut]).unwrap_err();
        assert_eq!(err.kind, PayloadKind::Bootstrap);
        assert!(
            matches!(
                err.reason,
                MalformedReason::Truncated { .. } | MalformedReason::LengthOverrun { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
    let mut long = bytes.clone();
    long.push(0xff);
    assert!(matches!(
        reason(Bootstrap::decode(&long).unwrap_err()),
        MalformedReason::TrailingBytes { count: 1, .. }
    ));
}

#[test]
fn bootstrap_length_prefix_overrun_is_caught() {
    // storage wrapped claims 0xffffffff bytes with 0 present.
    let bytes = unhex("01 00000001 ffffffff");
    assert_eq!(
        reason(Bootstrap::decode(&bytes).unwrap_err()),
        MalformedReason::LengthOverrun {
            field: "wrapped_storage",
            offset: 5,
            claimed: u32::MAX,
            available: 0
        }
    );
}

#[test]
fn bootstrap_batch_cap_checked_before_rows_are_read() {
    // A count one over the cap with no rows behind it: the cap wins over
    // truncation, so the decoder never considered allocating.
    let mut bytes = unhex("01 00000001 00000000 00000002 00000000");
    bytes.extend_from_slice(&(MAX_BOOTSTRAP_BATCH + 1).to_be_bytes());
    assert_eq!(
        reason(Bootstrap::decode(&bytes).unwrap_err()),
        MalformedReason::BatchTooLarge {
            count: u64::from(MAX_BOOTSTRAP_BATCH + 1)
        }
    );
    let mut huge = unhex("01 00000001 00000000 00000002 00000000");
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        reason(Bootstrap::decode(&huge).unwrap_err()),
        MalformedReason::BatchTooLarge { .. }
    ));
    // At the cap but without the rows: truncation, detected before allocating.
    let mut at_cap = unhex("01 00000001 00000000 00000002 00000000");
    at_cap.extend_from_slice(&MAX_BOOTSTRAP_BATCH.to_be_bytes());
    assert!(matches!(
        reason(Bootstrap::decode(&at_cap).unwrap_err()),
        MalformedReason::Truncated {
            field: "batch rows",
            ..
        }
    ));
}

#[test]
fn bootstrap_at_the_cap_round_trips() {
    let row = Registration {
        dek_id: 1,
        full_node_id: 5,
        local_epoch: 1,
    };
    let b = Bootstrap {
        storage_dek_id: 1,
        wrapped_storage: vec![],
        raft_dek_id: 2,
        wrapped_raft: vec![],
        batch_registry: vec![row; MAX_BOOTSTRAP_BATCH as usize],
    };
    let bytes = b.encode().expect("at the cap is allowed");
    assert_eq!(Bootstrap::decode(&bytes), Ok(b.clone()));
    assert_eq!(b.validate(), Ok(()));
    let mut over = b;
    over.batch_registry.push(row);
    assert!(matches!(
        reason(over.validate().unwrap_err()),
        MalformedReason::BatchTooLarge { .. }
    ));
    // Over-cap bytes can be produced (to test decoders) but never decode.
    let over_bytes = over.encode().expect("encodable");
    assert!(matches!(
        reason(Bootstrap::decode(&over_bytes).unwrap_err()),
        MalformedReason::BatchTooLarge { .. }
    ));
}

#[test]
fn rotation_sub_tag_and_purpose_rules() {
    let base = unhex("01 01 00000003 01 00000000 00000003 0000000000000001 0001");
    assert!(Rotation::decode(&base).is_ok());
    for tag in 0u8..=255 {
        let mut bytes = base.clone();
        bytes[1] = tag;
        let result = Rotation::decode(&bytes);
        match tag {
            0x01 | 0x04 | 0x05 => assert!(result.is_ok()),
            0x02..=0x03 => assert_eq!(
                reason(result.unwrap_err()),
                MalformedReason::ReservedSubTag(tag)
            ),
            _ => assert_eq!(
                reason(result.unwrap_err()),
                MalformedReason::UnknownSubTag(tag)
            ),
        }
    }
    for purpose in 0u8..=255 {
        let mut bytes = base.clone();
        bytes[6] = purpose;
        let result = Rotation::decode(&bytes);
        if purpose == 1 || purpose == 2 {
            assert!(result.is_ok());
        } else {
            assert_eq!(
                reason(result.unwrap_err()),
                MalformedReason::UnknownPurpose(purpose)
            );
        }
    }
    for cut in 0..base.len() {
        assert!(Rotation::decode(&base[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn entry_dispatch_and_reserved_opcodes() {
    let reg = Registration {
        dek_id: 1,
        full_node_id: 2,
        local_epoch: 3,
    };
    let entry = Entry::Registration(reg).encode().expect("encodable");
    assert_eq!(entry[0], OP_REGISTRATION);
    assert_eq!(Entry::decode(&entry), Ok(Entry::Registration(reg)));
    assert_eq!(
        reason(Entry::decode(&[]).unwrap_err()),
        MalformedReason::EmptyEntry
    );
    for op in 0u8..=255 {
        let mut bytes = entry.clone();
        bytes[0] = op;
        let result = Entry::decode(&bytes);
        match op {
            0x03 => assert!(result.is_ok()),
            // The registration bytes are not a valid bootstrap/rotation.
            0x04 | 0x05 => assert!(result.is_err()),
            0x06 | 0x07 => assert_eq!(
                reason(result.unwrap_err()),
                MalformedReason::ReservedOpcode(op)
            ),
            _ => assert_eq!(
                reason(result.unwrap_err()),
                MalformedReason::NotEncryptionOpcode(op)
            ),
        }
        assert_eq!(is_encryption_opcode(op), (0x03..=0x07).contains(&op));
    }
}

#[test]
fn malformed_reason_codes_are_distinct() {
    let reasons = [
        MalformedReason::EmptyEntry,
        MalformedReason::ReservedOpcode(6),
        MalformedReason::NotEncryptionOpcode(1),
        MalformedReason::WrongVersion(2),
        MalformedReason::Truncated {
            field: "x",
            offset: 0,
            needed: 1,
            available: 0,
        },
        MalformedReason::LengthOverrun {
            field: "x",
            offset: 0,
            claimed: 1,
            available: 0,
        },
        MalformedReason::TrailingBytes {
            offset: 0,
            count: 1,
        },
        MalformedReason::BatchTooLarge { count: 1 },
        MalformedReason::ReservedSubTag(2),
        MalformedReason::UnknownSubTag(9),
        MalformedReason::UnknownPurpose(3),
        MalformedReason::FieldTooLong { field: "x", len: 1 },
    ];
    let mut codes: Vec<_> = reasons.iter().map(MalformedReason::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), reasons.len());
}
