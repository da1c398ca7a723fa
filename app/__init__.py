"""MailFlow Lab: watch real mail protocol conversations step by step."""
