//! One method per chip command (protocol.md §3), in three groups: general and administrative
//! commands, the data partition, and keys and cryptography.

mod crypto;
mod data;
mod general;

use core::marker::PhantomData;

use sesame_wire::Reader;

/// Records of a Query answer, read from the driver's frame buffer without copying. The whole
/// answer was checked when it arrived, so iterating cannot fail.
pub struct Records<'a, T> {
    reader: Reader<'a>,
    left: usize,
    read: fn(&mut Reader<'a>) -> Result<T, sesame_wire::Error>,
    _t: PhantomData<T>,
}

impl<'a, T> Records<'a, T> {
    /// Checks that `reader` holds exactly `count` records and nothing after them.
    pub(crate) fn new(
        reader: Reader<'a>,
        count: usize,
        read: fn(&mut Reader<'a>) -> Result<T, sesame_wire::Error>,
    ) -> Result<Self, sesame_wire::Error> {
        let mut check = reader.clone();
        for _ in 0..count {
            read(&mut check)?;
        }
        check.finish()?;
        Ok(Self {
            reader,
            left: count,
            read,
            _t: PhantomData,
        })
    }
}

impl<T> Iterator for Records<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        (self.read)(&mut self.reader).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for Records<'_, T> {}

impl<T> core::fmt::Debug for Records<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Records")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}
