//! The buyer portal's home: what a buyer sees and may do with their own
//! licenses (sign-in by an emailed magic link, their licenses and machines,
//! subscription management). Its pages will be served under `/portal`
//! (`http/`), and it will call the same library functions as the admin
//! API (`admin/`, `licensing/`), scoped to the signed-in buyer
//! (docs/architecture.md, "Map of the tree"). Nothing is served yet.
