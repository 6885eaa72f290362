//! Exact money: ISO 4217 currencies, amounts exact in the currency's minor unit, and the two
//! rules that turn revenue into payouts (the pool rule and the line rule). Pure functions.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why an amount, share or weight is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("currency must be three upper-case letters (ISO 4217), got {0:?}")]
    BadCurrency(String),
    #[error("{amount} has more decimals than {currency} allows ({minor_units})")]
    TooManyDecimals {
        amount: Decimal,
        currency: Currency,
        minor_units: u32,
    },
    #[error("amount must be positive, got {0}")]
    NotPositive(Decimal),
    #[error("amount {0} is beyond the largest amount the ledger keeps ({max})", max = Money::MAGNITUDE_MAJOR_UNITS_MAX)]
    TooLarge(Decimal),
    #[error("currencies differ: {left} and {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("not a decimal number: {0:?}")]
    NotADecimal(String),
    #[error("artist share must be greater than 0 and at most 1 with at most {scale_max} decimals, got {value}", scale_max = ArtistShare::SCALE_MAX)]
    BadArtistShare { value: Decimal },
    #[error("weight must be greater than 0, at most {max} and have at most {scale_max} decimals, got {value}", max = Weight::MAX, scale_max = Weight::SCALE_MAX)]
    BadWeight { value: Decimal },
}

/// An ISO 4217 currency code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");
    pub const JPY: Currency = Currency(*b"JPY");
    pub const BHD: Currency = Currency(*b"BHD");

    pub fn new(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::BadCurrency(code.to_string()));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn code(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }

    /// Decimals of the currency's minor unit (ISO 4217); 2 unless listed.
    pub fn minor_units(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" => 0,
            b"BHD" | b"KWD" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::new(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount in one currency, exact in its minor unit (kept at exactly that scale, so
/// `1.5 USD` is stored as `1.50`). May be negative: profit can be.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// The largest magnitude the ledger keeps, in major units. Every input and every
    /// production total stays within it, so the line rule's integer arithmetic cannot
    /// overflow (see `split_pool`).
    pub const MAGNITUDE_MAJOR_UNITS_MAX: i64 = 1_000_000_000_000_000;

    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        let minor_units = currency.minor_units();
        let normalized = amount.normalize();
        if normalized.scale() > minor_units {
            return Err(MoneyError::TooManyDecimals {
                amount,
                currency,
                minor_units,
            });
        }
        if normalized.abs() > Decimal::from(Money::MAGNITUDE_MAJOR_UNITS_MAX) {
            return Err(MoneyError::TooLarge(amount));
        }
        let mut amount = normalized;
        amount.rescale(minor_units);
        Ok(Money { amount, currency })
    }

    /// An amount that must be greater than zero (revenue, expenses, fees).
    pub fn positive(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(amount));
        }
        Money::new(amount, currency)
    }

    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let amount =
            Decimal::from_str(text).map_err(|_| MoneyError::NotADecimal(text.to_string()))?;
        Money::new(amount, currency)
    }

    pub fn zero(currency: Currency) -> Money {
        Money::from_minor_units(0, currency)
    }

    /// `units` of the currency's minor unit (cents for USD).
    pub fn from_minor_units(units: i64, currency: Currency) -> Money {
        Money {
            amount: Decimal::new(units, currency.minor_units()),
            currency,
        }
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in minor units. Exact: amounts are kept at the minor unit's scale and
    /// within `MAGNITUDE_MAJOR_UNITS_MAX`.
    pub fn minor_units(&self) -> i128 {
        self.amount.mantissa()
    }

    pub fn is_positive(&self) -> bool {
        self.amount > Decimal::ZERO
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::TooLarge(self.amount))?;
        Money::new(sum, self.currency)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let difference = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::TooLarge(self.amount))?;
        Money::new(difference, self.currency)
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            });
        }
        Ok(())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

/// The stored form: the amount as a decimal string (bincode cannot carry `Decimal`'s own
/// serde form, see shared/FINDINGS.md) and the currency code. Validated on the way back in.
#[derive(Serialize, Deserialize)]
struct MoneyRepr {
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MoneyRepr {
            amount: self.amount,
            currency: self.currency,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = MoneyRepr::deserialize(deserializer)?;
        Money::new(repr.amount, repr.currency).map_err(serde::de::Error::custom)
    }
}

macro_rules! bounded_decimal {
    ($(#[$doc:meta])* $name:ident, $check:expr, $error:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(Decimal);

        impl $name {
            pub fn new(value: Decimal) -> Result<$name, MoneyError> {
                let value = value.normalize();
                let check: fn(Decimal) -> bool = $check;
                if !check(value) {
                    return Err(MoneyError::$error { value });
                }
                Ok($name(value))
            }

            pub fn parse(text: &str) -> Result<$name, MoneyError> {
                let value = Decimal::from_str(text)
                    .map_err(|_| MoneyError::NotADecimal(text.to_string()))?;
                $name::new(value)
            }

            pub fn value(&self) -> Decimal {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                rust_decimal::serde::str::serialize(&self.0, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = rust_decimal::serde::str::deserialize(deserializer)?;
                $name::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

bounded_decimal!(
    /// The artists' share of a production's profit: in (0, 1], 0.5 unless the production
    /// says otherwise.
    ArtistShare,
    |value| value > Decimal::ZERO && value <= Decimal::ONE && value.scale() <= ArtistShare::SCALE_MAX,
    BadArtistShare
);

impl ArtistShare {
    pub const SCALE_MAX: u32 = 6;

    pub fn half() -> ArtistShare {
        ArtistShare(Decimal::new(5, 1))
    }
}

bounded_decimal!(
    /// A line's weight in an allocation proposal: positive, bounded, at most six decimals.
    Weight,
    |value| value > Decimal::ZERO && value <= Decimal::from(Weight::MAX) && value.scale() <= Weight::SCALE_MAX,
    BadWeight
);

impl Weight {
    pub const MAX: i64 = 1_000_000;
    pub const SCALE_MAX: u32 = 6;

    /// The weight as an integer count of 10^-SCALE_MAX, exact by construction.
    fn scaled(&self) -> u128 {
        let mut value = self.0;
        value.rescale(Weight::SCALE_MAX);
        u128::try_from(value.mantissa()).expect("weights are positive")
    }
}

/// The artists' cumulative entitlement from a cumulative profit (rule 4):
/// `artist_share × max(profit, 0)`, rounded to the minor unit half-to-even.
pub fn entitlement(profit: Money, share: ArtistShare) -> Money {
    let currency = profit.currency();
    let positive = profit.amount().max(Decimal::ZERO);
    // Both factors are bounded (profit by MAGNITUDE_MAJOR_UNITS_MAX, share ≤ 1), so the
    // product fits a Decimal.
    let exact = positive * share.value();
    let rounded = exact.round_dp_with_strategy(
        currency.minor_units(),
        RoundingStrategy::MidpointNearestEven,
    );
    Money::new(rounded, currency).expect("the entitlement is at most the profit")
}

/// Why a pool cannot be distributed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PoolError {
    #[error("nothing to distribute: entitlement {entitlement} minus earlier pools {earlier_pools} is not positive")]
    NothingToDistribute {
        entitlement: Money,
        earlier_pools: Money,
    },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// The pool rule (rule 4): the entitlement at the cut-off minus the pools of the
/// production's earlier distributions; a pool of zero or less is refused.
pub fn pool(
    revenue_total: Money,
    expense_total: Money,
    share: ArtistShare,
    earlier_pools: Money,
) -> Result<Money, PoolError> {
    let profit = revenue_total.checked_sub(expense_total)?;
    let entitlement = entitlement(profit, share);
    let pool = entitlement.checked_sub(earlier_pools)?;
    if !pool.is_positive() {
        return Err(PoolError::NothingToDistribute {
            entitlement,
            earlier_pools,
        });
    }
    Ok(pool)
}

/// The line rule (rule 5): `pool × weight / Σweights`, each rounded down to the minor unit;
/// the units left over go one each to the lines with the largest remainders, ties to the
/// earlier line. The amounts sum to the pool exactly.
///
/// Integer arithmetic throughout: the pool in minor units (< 10^19) times a scaled weight
/// (≤ 10^12) stays below 10^31, far inside u128.
pub fn split_pool(pool: Money, weights: &[Weight]) -> Vec<Money> {
    let currency = pool.currency();
    assert!(pool.is_positive(), "only positive pools are split");
    let pool_units = u128::try_from(pool.minor_units()).expect("positive");
    let scaled: Vec<u128> = weights.iter().map(Weight::scaled).collect();
    let weight_total: u128 = scaled.iter().sum();
    if weight_total == 0 {
        return Vec::new();
    }
    let mut units: Vec<u128> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    for (index, weight) in scaled.iter().enumerate() {
        let numerator = pool_units * weight;
        units.push(numerator / weight_total);
        remainders.push((numerator % weight_total, index));
    }
    let leftover = pool_units - units.iter().sum::<u128>();
    // Fewer leftover units than lines: each floor loses less than one unit.
    let leftover = usize::try_from(leftover).expect("leftover is below the line count");
    assert!(leftover <= weights.len());
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in remainders.iter().take(leftover) {
        units[*index] += 1;
    }
    units
        .into_iter()
        .map(|unit| {
            Money::from_minor_units(
                i64::try_from(unit).expect("each amount is at most the pool"),
                currency,
            )
        })
        .collect()
}

/// Σ amounts, all of one currency.
pub fn sum(currency: Currency, amounts: &[Money]) -> Result<Money, MoneyError> {
    amounts
        .iter()
        .try_fold(Money::zero(currency), |total, amount| {
            total.checked_add(*amount)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(text: &str) -> Money {
        Money::parse(text, Currency::USD).unwrap()
    }

    fn weights(values: &[&str]) -> Vec<Weight> {
        values.iter().map(|v| Weight::parse(v).unwrap()).collect()
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!(Currency::USD.minor_units(), 2);
        assert_eq!(Currency::new("KRW").unwrap().minor_units(), 0);
        assert_eq!(Currency::JPY.minor_units(), 0);
        assert_eq!(Currency::new("KWD").unwrap().minor_units(), 3);
        assert_eq!(Currency::BHD.minor_units(), 3);
        assert!(matches!(
            Currency::new("usd"),
            Err(MoneyError::BadCurrency(_))
        ));
        assert!(Currency::new("US").is_err());
    }

    #[test]
    fn amounts_must_be_exact_in_the_minor_unit() {
        assert_eq!(usd("1.5").amount().to_string(), "1.50");
        assert!(matches!(
            Money::parse("1.005", Currency::USD),
            Err(MoneyError::TooManyDecimals { minor_units: 2, .. })
        ));
        assert!(Money::parse("100.00", Currency::JPY).is_ok());
        assert!(Money::parse("100.5", Currency::JPY).is_err());
        assert!(Money::parse("1.005", Currency::BHD).is_ok());
        assert!(matches!(
            Money::positive(Decimal::ZERO, Currency::USD),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            Money::positive(Decimal::new(-1, 0), Currency::USD),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            Money::parse("1000000000000000.01", Currency::USD),
            Err(MoneyError::TooLarge(_))
        ));
        assert!(matches!(
            usd("1").checked_add(Money::parse("1", Currency::EUR).unwrap()),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert!(matches!(
            Money::parse("abc", Currency::USD),
            Err(MoneyError::NotADecimal(_))
        ));
    }

    #[test]
    fn shares_and_weights_are_bounded() {
        assert!(ArtistShare::parse("0").is_err());
        assert!(ArtistShare::parse("1.01").is_err());
        assert!(ArtistShare::parse("1").is_ok());
        assert!(Weight::parse("0").is_err());
        assert!(Weight::parse("-1").is_err());
        assert!(Weight::parse("0.0000001").is_err());
        assert!(Weight::parse("1000001").is_err());
        assert!(Weight::parse("0.000001").is_ok());
    }

    #[test]
    fn money_round_trips_through_bincode() {
        let money = usd("12.30");
        let bytes = bincode::serde::encode_to_vec(money, bincode::config::standard()).unwrap();
        let (back, _): (Money, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, money);
    }

    #[test]
    fn entitlement_rounds_half_to_even() {
        let half = ArtistShare::half();
        assert_eq!(entitlement(usd("0.01"), half), usd("0.00"));
        assert_eq!(entitlement(usd("0.03"), half), usd("0.02"));
        assert_eq!(entitlement(usd("0.05"), half), usd("0.02"));
        assert_eq!(entitlement(usd("-10"), half), usd("0"));
        assert_eq!(entitlement(usd("50000"), half), usd("25000"));
    }

    #[test]
    fn pools_subtract_earlier_pools_and_refuse_nothing() {
        let half = ArtistShare::half();
        assert_eq!(
            pool(usd("1000"), usd("200"), half, usd("100")).unwrap(),
            usd("300")
        );
        assert!(matches!(
            pool(usd("1000"), usd("200"), half, usd("400")),
            Err(PoolError::NothingToDistribute { .. })
        ));
        assert!(matches!(
            pool(usd("100"), usd("200"), half, usd("0")),
            Err(PoolError::NothingToDistribute { .. })
        ));
    }

    #[test]
    fn leftover_units_go_to_the_largest_remainders_ties_to_the_earlier_line() {
        // 1.00 over three equal lines: 0.33 each, one cent left, the first line gets it.
        assert_eq!(
            split_pool(usd("1"), &weights(&["1", "1", "1"])),
            vec![usd("0.34"), usd("0.33"), usd("0.33")]
        );
        // Remainders 1/6·100=16.67 → 16 r4, 2/6 → 33 r2, 3/6 → 50 r0: the first line wins.
        assert_eq!(
            split_pool(usd("1"), &weights(&["1", "2", "3"])),
            vec![usd("0.17"), usd("0.33"), usd("0.50")]
        );
        assert_eq!(
            split_pool(
                Money::parse("10", Currency::JPY).unwrap(),
                &weights(&["1", "1", "1"])
            ),
            ["4", "3", "3"]
                .iter()
                .map(|v| Money::parse(v, Currency::JPY).unwrap())
                .collect::<Vec<_>>()
        );
    }

    fn weight_strategy() -> impl Strategy<Value = Weight> {
        (1u64..=1_000_000_000_000)
            .prop_map(|micro| Weight::new(Decimal::new(micro as i64, 6)).expect("in range"))
    }

    fn currency_strategy() -> impl Strategy<Value = Currency> {
        prop_oneof![
            Just(Currency::USD),
            Just(Currency::JPY),
            Just(Currency::BHD)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn split_sums_exactly_and_stays_within_one_unit(
            pool_units in 1i64..=1_000_000_000_000_000,
            currency in currency_strategy(),
            weights in prop::collection::vec(weight_strategy(), 1..200),
        ) {
            let pool = Money::from_minor_units(pool_units, currency);
            let amounts = split_pool(pool, &weights);
            prop_assert_eq!(amounts.len(), weights.len());
            prop_assert_eq!(sum(currency, &amounts).unwrap(), pool);
            let total: Decimal = weights.iter().map(Weight::value).sum();
            let unit = Decimal::new(1, currency.minor_units());
            for (amount, weight) in amounts.iter().zip(&weights) {
                prop_assert!(amount.amount() >= Decimal::ZERO);
                prop_assert_eq!(amount.currency(), currency);
                // Compare without dividing: |amount·W − pool·w| < unit·W.
                let difference = (amount.amount() * total - pool.amount() * weight.value()).abs();
                prop_assert!(difference < unit * total, "{} vs share of {}", amount, weight);
            }
            // Only (pool, weights, order) matter: the same inputs give the same amounts,
            // and scaling every weight by the same factor changes nothing.
            prop_assert_eq!(&split_pool(pool, &weights), &amounts);
        }

        #[test]
        fn split_is_invariant_under_scaling_weights(
            pool_units in 1i64..=10_000_000_000,
            raw in prop::collection::vec(1i64..=1_000, 1..50),
            factor in 1i64..=1_000,
        ) {
            let pool = Money::from_minor_units(pool_units, Currency::USD);
            let plain: Vec<Weight> = raw.iter().map(|w| Weight::new(Decimal::from(*w)).unwrap()).collect();
            let scaled: Vec<Weight> = raw.iter().map(|w| Weight::new(Decimal::from(*w * factor)).unwrap()).collect();
            prop_assert_eq!(split_pool(pool, &plain), split_pool(pool, &scaled));
        }

        #[test]
        fn pools_never_exceed_the_entitlement(
            steps in prop::collection::vec((0u8..3, 1i64..=10_000_000), 1..60),
        ) {
            // 0: revenue, 1: expense, 2: distribute what is there.
            let share = ArtistShare::half();
            let mut revenue = usd("0");
            let mut expenses = usd("0");
            let mut pools = usd("0");
            let mut entitlement_max = usd("0");
            for (kind, cents) in steps {
                let amount = Money::from_minor_units(cents, Currency::USD);
                match kind {
                    0 => revenue = revenue.checked_add(amount).unwrap(),
                    1 => expenses = expenses.checked_add(amount).unwrap(),
                    _ => {
                        if let Ok(pool) = pool(revenue, expenses, share, pools) {
                            prop_assert!(pool.is_positive());
                            pools = pools.checked_add(pool).unwrap();
                            // A distribution brings the pools up to the entitlement, no further.
                            let entitled = entitlement(revenue.checked_sub(expenses).unwrap(), share);
                            prop_assert_eq!(pools, entitled);
                        }
                    }
                }
                let entitled = entitlement(revenue.checked_sub(expenses).unwrap(), share);
                if entitled.amount() > entitlement_max.amount() {
                    entitlement_max = entitled;
                }
                // Expenses recorded after a distribution may lower today's entitlement, but
                // what was distributed never exceeds an entitlement the production reached.
                prop_assert!(pools.amount() <= entitlement_max.amount());
            }
        }
    }
}
