pub mod pytrec;
