//! Keys for the write workloads: `prefix` + the key number, zero-padded to `size` digits,
//! chosen in order or uniformly at random over `space` keys.

use rand::Rng;

#[derive(Debug, Clone)]
pub struct KeyGen {
    prefix: String,
    size: usize,
    space: u64,
    sequential: bool,
}

impl KeyGen {
    pub fn new(prefix: &str, size: usize, space: u64, sequential: bool) -> Result<KeyGen, String> {
        let digits = space.saturating_sub(1).max(1).ilog10() as usize + 1;
        if size < digits {
            return Err(format!("--key-size {size} cannot number {space} keys (needs {digits})"));
        }
        Ok(KeyGen { prefix: prefix.to_string(), size, space: space.max(1), sequential })
    }

    /// The key of operation number `index`.
    pub fn key(&self, index: u64) -> Vec<u8> {
        let number = if self.sequential { index % self.space } else { rand::thread_rng().gen_range(0..self.space) };
        self.numbered(number)
    }

    pub fn numbered(&self, number: u64) -> Vec<u8> {
        format!("{}{number:0width$}", self.prefix, width = self.size).into_bytes()
    }
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Vec<u8> {
    vec![b'v'; size]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_wrap_around_the_key_space() {
        let keys = KeyGen::new("p/", 8, 3, true).unwrap();
        let got: Vec<_> = (0..4).map(|index| String::from_utf8(keys.key(index)).unwrap()).collect();
        assert_eq!(got, ["p/00000000", "p/00000001", "p/00000002", "p/00000000"]);
    }

    #[test]
    fn random_keys_stay_in_the_key_space_and_have_the_size() {
        let keys = KeyGen::new("", 4, 10_000, false).unwrap();
        for index in 0..1_000 {
            let key = keys.key(index);
            assert_eq!(key.len(), 4);
            assert!(std::str::from_utf8(&key).unwrap().parse::<u64>().unwrap() < 10_000);
        }
        assert!(KeyGen::new("", 4, 10_001, false).is_err());
        assert!(KeyGen::new("", 1, 1, false).is_ok());
    }
}
