//! Enumerations whose values are strings in records, rows and the OpenAPI
//! document: each is declared once, with its names, by [`named_enum!`].

/// A closed set of values, each with the one name it has everywhere.
pub trait Named: Sized + Copy + 'static {
    /// Every name, in declaration order: what the parser accepts and the
    /// OpenAPI document lists as the field's `enum`.
    const NAMES: &'static [&'static str];

    fn as_str(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self>;
}

/// Declares an enum of named values and its [`Named`] implementation.
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::named::Named for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];

            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                $crate::named::Named::as_str(self)
            }
        }
    };
}

pub(crate) use named_enum;
