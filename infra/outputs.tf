output "firestore_database_name" {
  description = "Firestore database id (pass it to the functions as the database setting)."
  value       = google_firestore_database.main.name
}

output "firestore_database_id" {
  description = "Full resource id of the Firestore database (projects/{project}/databases/{name})."
  value       = google_firestore_database.main.id
}
