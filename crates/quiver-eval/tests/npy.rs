//! .npy round trip, Fortran-order reads and malformed files.
use quiver_eval::npy;

#[test]
fn roundtrip_and_fortran_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("a.npy");
    npy::write_f32(&p, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("write");
    let a = npy::read_f32(&p).expect("read");
    assert_eq!(
        (a.rows, a.cols, a.data.clone()),
        (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    );
    // The same matrix stored column-major, as numpy writes np.asfortranarray(x).
    let mut bytes = std::fs::read(&p).expect("bytes");
    let text = String::from_utf8_lossy(&bytes[10..]).to_string();
    let hdr_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let new_hdr = text[..hdr_len].replace("'fortran_order': False", "'fortran_order': True ");
    bytes.splice(10..10 + hdr_len, new_hdr.bytes());
    let data_start = 10 + hdr_len;
    let col_major: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    bytes.splice(data_start.., col_major);
    std::fs::write(&p, &bytes).expect("write");
    let f = npy::read_f32(&p).expect("read fortran");
    assert_eq!(f.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let q = dir.path().join("b.npy");
    npy::write_i32(&q, 1, 2, &[7, -8]).expect("write");
    assert_eq!(npy::read_i32(&q).expect("read").data, vec![7, -8]);
    assert!(
        npy::read_f32(&q).is_err(),
        "dtype mismatch must be reported"
    );
    std::fs::write(&q, b"not numpy").expect("write");
    assert!(npy::read_i32(&q).is_err());
}
